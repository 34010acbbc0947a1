"""Fetch a public BEIR dataset archive when a network is reachable.

`python -m ragtune.data.download scifact --root DIR`. The connection uses a short
timeout so an offline machine fails in seconds with a clear message instead of hanging.
"""

from __future__ import annotations

import argparse
import io
import urllib.request
import zipfile
from pathlib import Path

from ragtune.data.beir import BEIR_URL, DataError, resolve_data_root


def download_beir(name: str, root: str | None = None, timeout: float = 10.0) -> Path:
    target = resolve_data_root(root)
    url = BEIR_URL.format(name=name)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except OSError as e:  # URLError, timeouts and refused connections are all OSErrors
        raise DataError(f"could not download {url} within {timeout:.0f}s ({e}); "
                        f"copy the BEIR folder '{name}' into {target} by hand") from None
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        archive.extractall(target)  # the archive holds one folder named after the dataset
    return target / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--root", default=None)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    print(download_beir(args.name, args.root, args.timeout))


if __name__ == "__main__":
    main()
