"""Class removal on trained DDPMs: NP vs SLD vs DNG (the DNG paper's Sec. 4.1)."""
