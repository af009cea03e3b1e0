"""The parameter-golf artifact: an int8 + zlib model file that runs on its own.

  artifact.py  the format: per-output-channel int8 quantization, fp16 small tensors, zlib 9;
               `load_model(path)` gives a model and its parameters from the file alone
  exporter.py  `export_workdir(config, workdir)`: checkpoint -> artifact, round-trip evaluation
               in a fresh process, artifact_bytes, the 16,000,000-byte budget check
  __main__.py  `python -m jaxgpt.export ARTIFACT`: the fresh-process round-trip evaluation

This package's __init__ imports nothing, so loading an artifact imports only what it needs
(the code whose bytes `artifact_bytes` counts).
"""
