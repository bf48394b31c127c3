package image

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// TextProgress draws a pull's progress on w: one line redrawn in place
// on a terminal, a line per phase otherwise.
func TextProgress(w io.Writer) func(Progress) {
	if w == nil {
		return nil
	}
	f, ok := w.(*os.File)
	tty := ok && term.IsTerminal(int(f.Fd()))
	start := time.Now()
	lastPhase := ""
	return func(p Progress) {
		if !tty {
			if p.Phase != lastPhase {
				switch p.Phase {
				case "download":
					fmt.Fprintf(w, "pulling %s: %d layers (%d cached), %s to fetch\n", p.Ref, p.Layers, p.Cached, sizeOrUnknown(p.Total))
				case "flatten":
					fmt.Fprintf(w, "pulling %s: flattening\n", p.Ref)
				}
			}
			lastPhase = p.Phase
			return
		}
		const width = 24
		var bar string
		if p.Total > 0 {
			n := int(float64(width) * float64(min(p.Bytes, p.Total)) / float64(p.Total))
			bar = "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] "
		}
		line := fmt.Sprintf("%s %s  layers %d/%d  %s%s", p.Phase, p.Ref, p.Done, p.Layers, bar, FormatBytes(p.Bytes))
		if p.Total > 0 {
			line += " / " + FormatBytes(p.Total)
		}
		if p.Phase == "download" {
			rate := float64(p.Bytes) / max(time.Since(start).Seconds(), 0.001)
			line += "  " + FormatBytes(int64(rate)) + "/s"
		}
		fmt.Fprintf(w, "\r\x1b[K%s", line)
		if p.Phase == "done" {
			fmt.Fprint(w, "\r\x1b[K")
		}
	}
}

// FormatBytes writes a size in binary units: 1.5 GiB.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func sizeOrUnknown(n int64) string {
	if n <= 0 {
		return "size unknown"
	}
	return FormatBytes(n)
}
