package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
)

// columns lays objects out left to right at fixed widths, the last taking what is left,
// so the header and every row of a list line up like a table.
type columns struct{ widths []float32 }

func (c *columns) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	pad := theme.Padding()
	x := float32(0)
	for i, o := range objs {
		w := size.Width - x
		if i < len(c.widths) && i < len(objs)-1 {
			w = c.widths[i]
		}
		h := o.MinSize().Height
		o.Move(fyne.NewPos(x, (size.Height-h)/2))
		o.Resize(fyne.NewSize(w, h))
		x += w + pad
	}
}

func (c *columns) MinSize(objs []fyne.CanvasObject) fyne.Size {
	pad := theme.Padding()
	var w, h float32
	for i, o := range objs {
		ms := o.MinSize()
		if i < len(c.widths) {
			w += c.widths[i]
		} else {
			w += ms.Width
		}
		if i > 0 {
			w += pad
		}
		h = max(h, ms.Height)
	}
	return fyne.NewSize(w, h)
}
