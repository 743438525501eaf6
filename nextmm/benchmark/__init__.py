"""The paper's evaluation: ``nextmm benchmark task=<name> model=<model> data_root=<folder> [limit=N]``.

    datasets.py   readers for the real annotation formats (COCO captions, AudioCaps csv, MSR-VTT json)
    features.py   the feature networks the metrics look through (Inception, CLIP, an audio classifier)
    metrics.py    FID / FD, IS and CLIP score (torchmetrics, torch-fidelity), BLEU / METEOR / CIDEr / SPICE
                  (pycocoevalcap, the COCO caption evaluation code)
    run.py        the command: a task's pinned protocol (nextmm/conf/benchmark/<task>.yaml), the model's
                  answers, the metrics, one JSON of every task run and a markdown table beside the paper's numbers
"""
