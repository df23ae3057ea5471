package ui

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"

	"fyne.io/fyne/v2"

	"github.com/skiff-dev/skiff/gui/model"
	"github.com/skiff-dev/skiff/machine"
)

// Colours of the state dots, chosen to read on light and dark panels and trays.
var (
	colRunning = color.NRGBA{0x2e, 0xa0, 0x43, 0xff}
	colBusy    = color.NRGBA{0xd2, 0x99, 0x22, 0xff}
	colCrashed = color.NRGBA{0xe5, 0x53, 0x4b, 0xff}
	colStopped = color.NRGBA{0x8b, 0x94, 0x9e, 0xff}
)

// dotPNG draws an anti-aliased filled circle with a darker rim, so it stays visible on
// any background, and encodes it as PNG.
func dotPNG(size int, c color.NRGBA, ring bool) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	r := float64(size)/2 - 1
	cx, cy := float64(size)/2, float64(size)/2
	rim := color.NRGBA{c.R / 2, c.G / 2, c.B / 2, 0xff}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			d := math.Hypot(float64(x)+0.5-cx, float64(y)+0.5-cy)
			a := math.Max(0, math.Min(1, r-d+0.5)) // coverage for anti-aliasing
			if a == 0 {
				continue
			}
			px := c
			if d > r-float64(size)/16 {
				px = rim
			}
			if ring && d < r*0.45 { // a hollow centre marks "idle" in the tray
				px = color.NRGBA{0, 0, 0, 0}
				a = math.Max(0, math.Min(1, d-r*0.45+0.5))
				if a > 0 {
					px = rim
				}
			}
			px.A = uint8(float64(px.A) * a)
			img.SetNRGBA(x, y, px)
		}
	}
	var buf bytes.Buffer
	png.Encode(&buf, img)
	return buf.Bytes()
}

var (
	iconRunning = fyne.NewStaticResource("skiff-running.png", dotPNG(64, colRunning, false))
	iconBusy    = fyne.NewStaticResource("skiff-busy.png", dotPNG(64, colBusy, false))
	iconCrashed = fyne.NewStaticResource("skiff-crashed.png", dotPNG(64, colCrashed, false))
	iconStopped = fyne.NewStaticResource("skiff-stopped.png", dotPNG(64, colStopped, false))
	iconIdle    = fyne.NewStaticResource("skiff-idle.png", dotPNG(64, colStopped, true))
)

// StateIcon is the dot shown next to a machine.
func StateIcon(m model.Machine) fyne.Resource {
	switch {
	case m.State == machine.StateCrashed:
		return iconCrashed
	case m.Busy != "" || m.State == machine.StateStarting || m.State == machine.StateStopping:
		return iconBusy
	case m.State == machine.StateRunning:
		return iconRunning
	}
	return iconStopped
}

// TrayIcon is the tray's icon for the summed-up state of all machines.
func TrayIcon(i model.Indicator) fyne.Resource {
	switch i {
	case model.IndicatorCrashed:
		return iconCrashed
	case model.IndicatorBusy:
		return iconBusy
	case model.IndicatorRunning:
		return iconRunning
	}
	return iconIdle
}
