"""Runnable stage scripts: thin argparse front-ends over vae/, diffusion/ and bridge/."""
