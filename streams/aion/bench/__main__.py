"""``python -m aion.bench [scenario] ...`` is ``aion bench [scenario] ...``."""

from ..cli._bench import bench_main

if __name__ == "__main__":
    bench_main()
