"""The model: the torch module (`network`) and its weights file (`weights`, safetensors, numpy both ways)."""
