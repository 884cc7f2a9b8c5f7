"""Auto-captioning with local models: a transformers image-to-text or vision-language model folder (BLIP, BLIP-2,
GIT, Florence-2, Qwen2.5-VL-class VLMs with a prompt), or a WD14-style tagger (an ``.onnx`` model and its
``selected_tags.csv``, run with onnxruntime).  Nothing is downloaded: the user points to a folder.

* :mod:`trainer.captioning.batch` (light): which images get a caption and how it joins the one they have
  (fill / replace / append, prefix, suffix), atomic writes, and the journal that undoes a whole batch.
* :mod:`trainer.captioning.models` (heavy): the captioners themselves, opened from a folder.
"""
