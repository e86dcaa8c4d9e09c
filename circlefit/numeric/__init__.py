"""CPU-independent float64 arithmetic: exact sums of products (`exact`), fixed-order solves (`solve`),
the MLP's stored weights evaluated in float64 (`mlp64`), and where the big products run (`backend`:
numpy, or torch on a GPU with the same bits). numpy only on the CPU default; torch for the GPU backend
and for activations other than ReLU."""
