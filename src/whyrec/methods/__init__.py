"""One file per published method; each is registered in `whyrec.registry.METHODS`."""
