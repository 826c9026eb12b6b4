"""Evaluation and reports: what a model has (not) learned, and whether the face sets are fit.

metrics.py    masked PSNR / SSIM of reconstructions
analyze.py    dlib landmarks and identity embeddings of aligned crops (also 64 px model output)
identity.py   distances to identity centroids, identity retrieval
pose.py       head-pose and expression error between a face and its swap
temporal.py   landmark jitter of a swapped clip against its source clip
coverage.py   yaw x pitch coverage of face sets, out-of-distribution target frames
evaluate.py   `faceswap evaluate`: the runner (JSON in the run folder, TensorBoard scalars)
report.py     `faceswap report`: a self-contained HTML page with PNG plots
recommend.py  plain-language recommendations from the numbers
"""
