"""racelens transforms: the PTransforms and DoFns of the pipeline."""
