"""The data the model learns from: generated splits (`generate`), their files (`store`), their z-score stats
(`normalize`). numpy only."""
