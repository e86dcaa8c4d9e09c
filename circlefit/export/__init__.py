"""The export: the torch graph (`graph`), checked in every runtime (`parity`), shipped as a bundle with its
sidecar, probes, Model Zoo test set and card (`bundle`, `sidecar`, `zoo`, `card`)."""
