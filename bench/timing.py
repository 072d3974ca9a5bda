"""The one timing helper of the benchmark scripts (imported as a sibling module: run them as `python bench/<name>.py`)."""
import gc
import time


def best_time(function, repeats: int = 1):
    "The smallest wall time of `repeats` calls (garbage collected before each), and the last call's result."
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result
