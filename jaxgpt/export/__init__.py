"""The parameter-golf artifact: an int8 + zlib (or int6) model file that runs on its own.

  artifact.py  the formats: per-output-channel int8 quantization, fp16 small tensors, zlib 9;
               int6 (`export.format = "int6"`): the Muon matrices in [-31, 31] with a
               least-error clip quantile per channel, zstd 22 (zlib 9 without zstandard);
               `load_model(path)` gives a model and its parameters from the file alone
  exporter.py  `export_workdir(config, workdir)`: checkpoint -> artifact, round-trip evaluation
               in a fresh process, artifact_bytes, the 16,000,000-byte budget check
  __main__.py  `python -m jaxgpt.export ARTIFACT`: the fresh-process round-trip evaluation

This package's __init__ imports nothing, so loading an artifact imports only what it needs
(the code whose bytes `artifact_bytes` counts).
"""
