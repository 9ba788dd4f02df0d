"""Prediction on new images (`predict.py`): read NIfTI / DICOM / PNG, prepare slices as the
training data module did, predict with Gaussian sliding windows, write masks in the input's
format and geometry, class probabilities and overlays."""
