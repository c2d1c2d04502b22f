package main

import (
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// charts draws the write storm's throughput and latency against the number
// of processes, one line per system, and returns the files' base names.
func (rep *report) charts(base string) ([]string, error) {
	type point struct{ n, thr, p50, p99 float64 }
	series := map[string][]point{}
	for _, c := range rep.Cells {
		if c.Scenario != scWrite {
			continue
		}
		for _, s := range c.Results {
			m := s.Median
			if m.OpsPerSec > 0 && m.P50Us > 0 {
				series[s.System] = append(series[s.System], point{float64(c.Procs), m.OpsPerSec, m.P50Us / 1e3, m.P99Us / 1e3})
			}
		}
	}
	if len(series) == 0 {
		return nil, nil
	}
	newPlot := func(title, y string) *plot.Plot {
		p := plot.New()
		p.Title.Text = title
		p.X.Label.Text = "processes released together (N)"
		p.Y.Label.Text = y
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top = true
		p.Add(plotter.NewGrid())
		return p
	}
	addLine := func(p *plot.Plot, i int, name string, xys plotter.XYs, dashed bool) error {
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color, s.Color = plotutil.Color(i), plotutil.Color(i)
		s.Shape = plotutil.Shape(i)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, s)
		if name != "" {
			p.Legend.Add(name, l, s)
		}
		return nil
	}

	thr := newPlot("Write storm: durable single-record inserts/s (median of rounds)", "inserts/s (all processes)")
	lat := newPlot("Write storm: latency per insert, p50 (solid) and p99 (dashed)", "ms")
	var minN, maxN float64
	for i, sys := range rep.Systems {
		pts := series[sys]
		if len(pts) == 0 {
			continue
		}
		var t, l50, l99 plotter.XYs
		for _, pt := range pts {
			t = append(t, plotter.XY{X: pt.n, Y: pt.thr})
			l50 = append(l50, plotter.XY{X: pt.n, Y: pt.p50})
			l99 = append(l99, plotter.XY{X: pt.n, Y: pt.p99})
			if minN == 0 || pt.n < minN {
				minN = pt.n
			}
			maxN = max(maxN, pt.n)
		}
		if err := addLine(thr, i, sys, t, false); err != nil {
			return nil, err
		}
		if err := addLine(lat, i, sys, l50, false); err != nil {
			return nil, err
		}
		if err := addLine(lat, i, "", l99, true); err != nil {
			return nil, err
		}
	}
	if rep.Fsync.MedianUs > 0 && maxN > minN {
		limit := 1e6 / (2 * rep.Fsync.MedianUs)
		l, err := plotter.NewLine(plotter.XYs{{X: minN, Y: limit}, {X: maxN, Y: limit}})
		if err != nil {
			return nil, err
		}
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		l.Width = vg.Points(1.5)
		thr.Add(l)
		thr.Legend.Add("fsync limit 1/(2·fdatasync)", l)
	}
	thr.Legend.Left = false
	thr.Legend.XOffs = -vg.Points(4)
	lat.Legend.Left = true
	lat.Legend.XOffs = vg.Points(4)
	var names []string
	for _, c := range []struct {
		p    *plot.Plot
		name string
	}{{thr, "-write-throughput.svg"}, {lat, "-write-latency.svg"}} {
		c.p.Legend.TextStyle.Font.Size = vg.Points(9)
		c.p.Legend.Padding = vg.Points(1)
		if err := c.p.Save(8*vg.Inch, 5*vg.Inch, base+c.name); err != nil {
			return nil, err
		}
		names = append(names, filepath.Base(base+c.name))
	}
	return names, nil
}
