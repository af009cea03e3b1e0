"""parameter-golf: the smallest model that scores well, judged as an int8+zlib artifact (or,
with the `int6` variants, an int6 one).

Default: the parameter-golf baseline shape (its naive baseline: 9 layers x 512, 8 query heads,
4 KV heads, MLP x2 with ReLU^2, tied embeddings, logit soft-cap 30, RoPE base 10000, encoder /
decoder split 4/5 with learned skip weights), BPE tokenizer of 1024 tokens (as its sp1024;
trained here on the Shakespeare training split), sequence 1024. Muon matrix lr 0.04 with its
update scale pinned to parameter-golf's sqrt(max(1, fan_out / fan_in)) ("shape") and SGD-style
Nesterov momentum 0.95 (warm-up from 0.85 over 500 steps); Adam (0.9, 0.95) on the tied
embedding (lr 0.05) and the vectors (lr 0.04) (these match parameter-golf's `train_gpt.py`);
linear warm-down over the last 20% of the training clock (a time cap binds the clock too, so
the warm-down always happens). That 20% is this project's choice: parameter-golf's baseline
warms down over its last WARMDOWN_ITERS = 1,200 steps' worth of wall-clock time (its default:
1,200 x the measured step time before the 600 s cap, where the multiplier reaches zero); the
`warmdown` variant does that (`optimizer.decay_steps`, docs/formulas.md "Warm-down in
iterations").
`export.at_end`: every finished run writes the artifact and its round-trip val_bpb.

Variants (combine with commas, e.g. `:best_proxy,cpu`):
  best_proxy  PR #1434's best combination: parallel blocks, SiLU^2, soft-cap 15, RoPE base 5000,
              2 KV heads, untied embeddings, no encoder/decoder skips, Tidal LR, Muon matrix
              lr 0.11, embedding lr 0.8 (Tidal's multiplier 0 -> 1 -> 0 on the training clock)
  pr1434      best_proxy as PR #1434's code computes it: Tidal's multiplier 0.1 -> 1 -> 0.1
              (initial_lr_frac = final_lr_frac = 0.1) over a horizon of 400 steps
              (schedule_steps; its wave scripts' ITERATIONS=400, which their 600 s cap cut at
              about step 276), and HEAD_DIVERSITY 1e-4 as it meant it (model.head_diversity;
              in the PR a no-op, see models/gpt.py)
  warmdown    parameter-golf's own warm-down: linear to 0 over the last WARMDOWN_ITERS = 1,200
              iterations, converted to time by the step time under the cap (decay_steps)
  int6        always-on int6 QAT (model.qat = "int6_quantile": every Muon matrix fake-quantized
              per row at the 0.9999984 quantile of |w| / 31, straight-through gradient) and the
              int6 artifact (export.format = "int6": the Muon matrices in [-31, 31], the
              embedding int8, zstd 22), as parameter-golf's MixedQuant record trains and exports
              (its export floors the scale at 1/31; this one does not, as its QAT does not)
  int6_late   late int6 QAT (model.qat = "int6_late": on once the LR multiplier is below 0.15,
              per-row max|w| / 31 with the scale floored at 1/31) and the int6 artifact with the
              same floor (export.int6_scale_floor = 1/31), as parameter-golf's QAT015 record does
              (its run warms down over 3,500 iterations; combine with `warmdown` for
              parameter-golf's warm-down). metric/qat_floor_share logs how often the floor binds
  systematic_search
              PR #141's hyperparameters (its code changes nothing else): Muon matrix lr 0.02,
              momentum 0.99, warm-down over WARMDOWN_ITERS = 3,000 iterations (decay_steps, on
              the time clock under the cap), RoPE base 200,000, sequence 4,096 with the batch
              cut 4x (the same tokens per step). Applied after `cpu` / `test`, it scales what
              is a length or a step count: the sequence 4x the proxy's with the batch / 4, and
              the warm-down 3,000 / 1,200 = 2.5x the proxy's share (0.2 -> 0.5 of the clock),
              since the proxy's 0.2 stands for parameter-golf's default 1,200 iterations; the
              LR, momentum and RoPE base are kept as the PR set them
  cpu         a proxy that learns something real in ~3 minutes on 2 CPU cores: 5 x 128 (8
              heads of 16), sequence 64, batch 32, training time capped at 120 s (the schedule
              runs on the time clock, so the decay completes whatever the machine's speed;
              with `pr1434` it runs on its 400 steps, as the PR's did)
  test        a few steps in seconds (tests)
`cpu` and `test` shrink the shape but keep each variant's head and KV-head counts; the
encoder/decoder split shrinks to at most num_layers // 2.
"""

from jaxgpt.config import apply_variants, base_config


def _best_proxy(c):
  c.model.update(parallel_block=True, mlp_act="silu2", logit_softcap=15.0, rope_base=5000.0,
                 num_kv_heads=2, tie_embeddings=False, encoder_layers=0)
  # Untied: the embedding table and the LM head are separate Adam groups.
  c.optimizer.update(schedule="tidal", lr=0.11, embed_lr=0.8, head_lr=0.008)


def _pr1434(c):
  _best_proxy(c)
  c.model.update(head_diversity=1e-4)
  c.optimizer.update(initial_lr_frac=0.1, final_lr_frac=0.1, schedule_steps=400)


def _warmdown(c):
  c.optimizer.update(schedule="wsd", warmup_frac=0.0, final_lr_frac=0.0, decay_steps=1200)


def _int6(c):
  c.model.update(qat="int6_quantile")
  c.export.update(format="int6")


def _int6_late(c):
  c.model.update(qat="int6_late", qat_threshold=0.15, qat_scale_floor=1.0 / 31)
  c.export.update(format="int6", int6_scale_floor=1.0 / 31)


def _systematic_search(c):
  shrunk = c.data.seq_len < 1024  # after `cpu` / `test` (ORDER): scale lengths and steps
  c.model.update(rope_base=200_000.0)
  c.optimizer.update(lr=0.02, momentum=0.99, schedule="wsd", warmup_frac=0.0, final_lr_frac=0.0)
  if shrunk:
    c.optimizer.update(decay_frac=c.optimizer.decay_frac * 3000 / 1200)
  else:
    c.optimizer.update(decay_steps=3000)
  c.data.update(seq_len=4 * c.data.seq_len)
  c.train.update(batch_size=max(1, c.train.batch_size // 4))


def _shrink(c, num_layers, d_model):
  c.model.update(num_layers=num_layers, d_model=d_model, compute_dtype="float32",
                 encoder_layers=min(c.model.encoder_layers, num_layers // 2))


def _cpu(c):
  # XLA:CPU runs these few layers unrolled ~1.6x faster than as a scan (docs/benchmarks.md
  # "Throughput"); GPU sizes keep the scan (one compiled block).
  _shrink(c, num_layers=5, d_model=128)
  c.model.scan_layers = False
  c.data.update(seq_len=64)
  c.optimizer.update(momentum_warmup_steps=50)
  c.train.update(steps=100_000, max_time_s=120.0, batch_size=32, eval_every=100,
                 eval_tokens=16384, log_every=10, eval_batch_size=256)


def _test(c):
  _shrink(c, num_layers=3, d_model=32)
  c.data.update(seq_len=32)
  c.optimizer.update(momentum_warmup_steps=2)
  c.train.update(steps=8, batch_size=4, eval_every=4, eval_tokens=512, log_every=2,
                 eval_batch_size=256, progress_bar=False)


VARIANTS = {"best_proxy": _best_proxy, "pr1434": _pr1434, "warmdown": _warmdown, "int6": _int6,
            "int6_late": _int6_late, "systematic_search": _systematic_search, "cpu": _cpu,
            "test": _test}
# systematic_search scales what cpu / test shrank, so it runs after them
ORDER = ("best_proxy", "pr1434", "warmdown", "int6", "int6_late", "cpu", "test",
         "systematic_search")


def get_config(variants: str = ""):
  c = base_config()
  c.name = "param_golf"
  c.model.update(name="gpt", num_layers=9, d_model=512, num_heads=8, num_kv_heads=4,
                 mlp_mult=2.0, mlp_act="relu2", qk_norm=True, tie_embeddings=True,
                 logit_softcap=30.0, rope_base=10000.0, encoder_layers=4, init="zero_out")
  c.data.update(tokenizer="bpe", bpe_vocab_size=1024, seq_len=1024)
  c.optimizer.update(name="muon", lr=0.04, update_scale="shape", momentum=0.95,
                     momentum_style="sgd", nesterov=True, momentum_warmup_steps=500,
                     embed_lr=0.05, scalar_lr=0.04, b1=0.9, b2=0.95, eps=1e-8,
                     weight_decay=0.0, grad_clip=0.0, schedule="wsd", warmup_frac=0.0,
                     decay_frac=0.2, final_lr_frac=0.0)
  c.train.update(steps=20_000, batch_size=512, eval_every=1000, eval_tokens=1 << 20,
                 max_time_s=600.0)
  c.export.update(at_end=True)
  return apply_variants(c, variants, VARIANTS, order=ORDER)
