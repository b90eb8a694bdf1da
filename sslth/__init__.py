from sslth.subset_sum import solve
