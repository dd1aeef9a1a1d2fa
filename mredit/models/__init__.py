"""Editing models (LightningModules) and the components they are built from.

Import from the submodules (``mredit.models.ip2p``, ``mredit.models.reward_mixin``, ...); this
package imports nothing so that light users (the pixel autoencoder, components) stay light.
"""
