"""SeMask and Swin segmentation models, installed as the package ``semask_models``."""
