"""The cloud side of ggic, run from a workstation with AWS credentials (``ggic cloud ...``).

- :mod:`.publish`: ``gdk component publish`` for a ``greengrass-build`` folder (S3 bucket,
  artifact upload, recipe URIs, ``CreateComponentVersion``, ``NEXT_PATCH``);
- :mod:`.deploy`: ``CreateDeployment`` to a thing or thing group, with greengrass-cli's
  ``--update-config`` shape, and waiting for a core device to apply it;
- :mod:`.neo` and :mod:`.model_component`: compile a PyTorch model with SageMaker Neo (no Edge
  Manager, which AWS discontinued on 2024-04-26) and package the result as a Greengrass model
  component for the classifier;
- :mod:`.safe_tar`: unpacking downloaded archives without letting them write outside a folder.

boto3 is imported only inside functions (the ``cloud`` extra): the components on devices never
install it.
"""
