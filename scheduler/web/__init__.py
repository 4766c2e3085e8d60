"""The workbench (工作台): server-rendered pages over the same application layer as the CLI."""
