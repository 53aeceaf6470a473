"""The built-in explanation methods, one module per family. Every public module here is imported on first use of
the registry (:mod:`attrflow.methods.registry`) and registers its methods; a new method is one new module."""
