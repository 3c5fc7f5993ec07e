"""Services of the running box: network addressing, and later HTTP admin, logging, dumps."""
