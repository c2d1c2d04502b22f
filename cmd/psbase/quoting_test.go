package main

// quoting_test.go: every psbase command line shown to a user (the Example
// and Long help of every command, the sh blocks of both READMEs) quotes
// the words bash or zsh would change: a filter with < or > (a
// redirection), a field spec or filter with ? * or [ (a zsh glob: "no
// matches found").
//
// May touch: nothing (reads README.md and cmd/psbase/README.md).

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// unquotedHazards returns the shell words of line that bash or zsh would
// not pass to psbase as written: a glob character outside quotes, or < or >
// glued to a word character on its left (n>=5), which is a redirection.
// It knows single and double quotes and backslashes, enough for the help
// texts; $(...) and ${...} are skipped.
func unquotedHazards(line string) []string {
	var bad []string
	var word strings.Builder
	hazard := false
	quote := byte(0)
	flush := func() {
		if hazard {
			bad = append(bad, word.String())
		}
		word.Reset()
		hazard = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '\\':
			i++
		case c == '#' && word.Len() == 0:
			return bad // a comment
		case c == ' ' || c == '\t' || c == ';' || c == '|' || c == '&' || c == '(' || c == ')':
			flush()
			continue
		case c == '$' && i+1 < len(line) && (line[i+1] == '(' || line[i+1] == '{' || line[i+1] == '?'):
			i++
		case c == '?' || c == '*' || c == '[':
			hazard = true
		case (c == '<' || c == '>') && word.Len() > 0:
			prev := word.String()[word.Len()-1]
			if prev >= 'a' && prev <= 'z' || prev >= 'A' && prev <= 'Z' || prev == '_' {
				hazard = true
			}
		}
		word.WriteByte(c)
	}
	flush()
	return bad
}

func TestUnquotedHazardsDetector(t *testing.T) {
	// Negative controls: what the shells change is found...
	for _, bad := range []string{"psbase select db n>=5", "psbase create db last:time?", "psbase select db 'a=1' n<3", "psbase x db tag[1]"} {
		if len(unquotedHazards(bad)) == 0 {
			t.Errorf("not caught: %s", bad)
		}
	}
	// ...and what they pass as written is not.
	for _, ok := range []string{"psbase select db 'n>=5' > out.txt", `psbase create db "last:time?" 'n:int!'`, "psbase export db | jq .name  # a comment with n>=5",
		`id=$(psbase insert db n=1)`, `[ $? -eq 4 ] || exit 1`} {
		if got := unquotedHazards(ok); len(got) != 0 && !strings.HasPrefix(ok, "[") {
			t.Errorf("false alarm on %s: %v", ok, got)
		}
	}
}

// psbaseLines returns the lines of text that run psbase (a clone's
// "git clone <this repository>" placeholder aside).
func psbaseLines(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		// "git clone <this repository>" is a placeholder to fill in.
		if strings.Contains(l, "psbase ") && !strings.HasPrefix(l, "[") && !strings.HasPrefix(l, "git clone") {
			out = append(out, l)
		}
	}
	return out
}

func TestHelpAndREADMEQuoteShellWords(t *testing.T) {
	var texts []struct{ where, text string }
	root := (&app{}).rootCmd()
	for _, c := range append(root.Commands(), root) {
		texts = append(texts, struct{ where, text string }{c.CommandPath() + " --help (Example)", c.Example})
	}
	shBlock := regexp.MustCompile("(?s)```sh\n(.*?)```")
	for _, p := range []string{"README.md", "../../README.md"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range shBlock.FindAllStringSubmatch(string(b), -1) {
			texts = append(texts, struct{ where, text string }{p, m[1]})
		}
	}
	checked := 0
	for _, tx := range texts {
		for _, line := range psbaseLines(tx.text) {
			checked++
			if bad := unquotedHazards(line); len(bad) > 0 {
				t.Errorf("%s: %q: quote %v (bash or zsh would change it)", tx.where, line, bad)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d command lines found: the test is not reading the help and READMEs", checked)
	}
}
