"""The synthetic editing world: procedural scenes, the seven edit categories with exact answers, flawed
training targets, and the oracle judge that scores any edit exactly (docs/synth.md)."""
