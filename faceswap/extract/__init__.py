"""Extraction: detectors, landmark aligners, alignment math, masks, per-face quality."""
