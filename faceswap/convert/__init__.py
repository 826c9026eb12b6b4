"""Convert: swap the faces of a clip with a trained model, labelled as synthetic.

align -> smooth -> model -> un-warp -> mask -> colour -> blend -> write (pipeline.py).
"""
