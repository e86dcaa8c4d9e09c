"""CPU-independent float64 arithmetic: exact sums of products (`exact`), fixed-order solves (`solve`),
and the MLP's stored weights evaluated in float64 (`mlp64`). numpy only."""
