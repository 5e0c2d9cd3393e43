"""How weights come and go: reading and converting official / timm / detectron2 / Hugging Face checkpoints into a
model (``convert.py``, ``detectron2.py``, which reads detectron2's pickles of numpy arrays with ``numpy_pickle.py``),
the training checkpoints of a run (``training.py``), and the atomic writes and checksums they share (``atomic.py``,
``checksum.py``)."""
