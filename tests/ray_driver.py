"""`mnistlab ARGS...` in a process of its own, on the tests' synthetic data set (as the `grid`
fixture of test_ray.py runs it in the test's process): for what a Ray driver prints on its
stdout and stderr, C++ lines included, and for drivers whose Ray settings (token, auth mode)
differ from the test process's, which Ray reads once, at import."""

from conftest import tiny_dataset

from mnistlab import cli, data

tiny = tiny_dataset()
data.load = lambda name, **options: tiny
cli.main()
