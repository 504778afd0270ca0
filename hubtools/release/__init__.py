"""The release stage: ``build.build`` a run into a release folder, ``publish.publish`` it as
a version on the Hub, ``importer.import_outputs`` answers made elsewhere into a run.

Importing this package or ``publish`` does not import huggingface_hub: ``publish`` must
configure the Hub endpoint (and Xet) before the clients are imported.
"""
