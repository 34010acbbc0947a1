"""Small matplotlib helpers for training curves read from `<output_dir>/metrics.jsonl`."""

from __future__ import annotations

from pathlib import Path

from ragtune.data.beir import read_jsonl


def read_curves(metrics_jsonl_path: str | Path, keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (steps, values)} for each key, from lines like {"step": 12, "dev/ndcg@10": 0.71}.

    Lines without the key are skipped, and so are negative steps (run.py logs the final
    results at step -1). A malformed line is an error naming the file and line.
    """
    curves: dict[str, tuple[list[int], list[float]]] = {k: ([], []) for k in keys}
    for _, row in read_jsonl(Path(metrics_jsonl_path), ("step",)):
        if row["step"] < 0:
            continue
        for key in keys:
            if key in row:
                curves[key][0].append(int(row["step"]))
                curves[key][1].append(float(row[key]))
    return curves


def plot_curves(metrics_jsonl_path: str | Path, keys: list[str], out_png: str | Path,
                title: str = "", xlabel: str = "step", steps_per_epoch: int = 0,
                references: dict[str, float] | None = None) -> Path:
    """One line per key against the step (or the epoch, when steps_per_epoch > 0); writes out_png.

    `references` {key: value} draws a dashed line per key in the same colour (e.g. the
    untrained baseline), so the gain over it is visible.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    curves = read_curves(metrics_jsonl_path, keys)
    missing = [k for k, (steps, _) in curves.items() if not steps]
    if len(missing) == len(keys):
        raise ValueError(f"{metrics_jsonl_path}: none of {keys} was logged")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, (steps, values) in curves.items():
        if steps:
            x = [s / steps_per_epoch for s in steps] if steps_per_epoch > 0 else steps
            line = ax.plot(x, values, marker="o", label=key)[0]
            if references and key in references:
                ax.axhline(references[key], linestyle="--", color=line.get_color(), alpha=0.7,
                           label=f"{key} (baseline)")
    ax.set_xlabel("epoch" if steps_per_epoch > 0 else xlabel)
    ax.set_title(title or Path(metrics_jsonl_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png
