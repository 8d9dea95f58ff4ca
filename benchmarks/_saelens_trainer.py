"""Run by `bench_sae.py` inside the separate SAELens virtualenv (sae-lens pins transformer-lens < 4,
so it cannot share our environment). Imports only torch, safetensors and sae_lens.

    python _saelens_trainer.py ACTS.safetensors OUT_DIR K D_SAE BATCH SAMPLES REPEATS THREADS

Trains SAELens's TopK SAE with its trainer's defaults (SAETrainerConfig: lr 3e-4, constant
schedule, Adam) on the activations `train [n, d_in]`, `REPEATS` times; times `trainer.fit()`
and `sae.encode` on `eval`; saves the last SAE with `save_inference_model` into OUT_DIR/sae and
prints one JSON line: {"fit_seconds": [...], "encode_seconds": [...], "version": ...}.
"""

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file


def main() -> None:
    acts, out, k, d_sae, batch, samples, repeats, threads = sys.argv[1:9]
    k, d_sae, batch, samples = int(k), int(d_sae), int(batch), int(samples)
    torch.set_num_threads(int(threads))
    import sae_lens
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    data = load_file(acts)
    train, evals = data["train"], data["eval"]

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            perm = torch.randperm(len(train), generator=g)
            yield from train[perm].split(batch)[: len(train) // batch]

    fit_s, enc_s = [], []
    for r in range(int(repeats)):
        torch.manual_seed(r)
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=train.shape[1], d_sae=d_sae, k=k))
        cfg = SAETrainerConfig(total_training_samples=samples, train_batch_size_samples=batch,
                               logger=LoggingConfig(log_to_wandb=False))
        cfg.lr_end = cfg.lr  # the runner config sets this; constant schedule (the default)
        trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=batches())
        t0 = time.perf_counter()
        trainer.fit()
        fit_s.append(time.perf_counter() - t0)
        with torch.no_grad():
            sae.encode(evals)
            t0 = time.perf_counter()
            sae.encode(evals)
            enc_s.append(time.perf_counter() - t0)
    sae.save_inference_model(Path(out) / "sae")
    print(json.dumps({"fit_seconds": fit_s, "encode_seconds": enc_s,
                      "version": sae_lens.__version__}))


if __name__ == "__main__":
    main()
