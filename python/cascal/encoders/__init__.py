"""Torch-free text encoders read from local model folders (numpy + ``tokenizers`` + ``safetensors``).

- :mod:`cascal.encoders.files`: reading model files (JSON, safetensors, ``tokenizer.json``) with
  errors that name the file, and their SHA-256 digests;
- :mod:`cascal.encoders.bert`: the forward pass of a sentence-transformers BERT model (e.g.
  all-MiniLM-L6-v2) in numpy, mean pooling and L2 normalisation;
- :mod:`cascal.encoders.static`: a static embedder folder (token table + tokenizer + manifest)
  and its inference: tokenize, gather, weighted mean, normalise;
- :mod:`cascal.encoders.distill`: building a static embedder folder from a sentence-transformers
  model folder (the Model2Vec method).

The optional packages (``tokenizers``, ``safetensors``; the ``cascal[static]`` extra) are imported
when a folder is loaded, never at import time.
"""
