"""A small Tethys-style app, moved to jobtower by changing its imports (see docs/tethys.rst)."""
