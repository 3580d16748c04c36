"""The engines that run the steps' data work: pandas (in process) and Dask (a cluster)."""
