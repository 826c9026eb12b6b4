"""Occlusion-aware face masks: a small trainable segmentation net (XSeg-like), user labels,
and applying it to face sets. Built on the library; the library never imports this package
(convert reaches a model only through the `segmenter` argument its caller passes)."""
