"""The lab: the demo, the experiment runner and what they share (data preparation, job running, run sharing,
reports, statistics). It sits on top of the library and drives it; nothing in the library imports it."""
