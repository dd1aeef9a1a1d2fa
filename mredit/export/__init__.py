"""Export trained modules to diffusers-layout folders and import the released Reward-InsPix2Pix weights."""
