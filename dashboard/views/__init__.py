"""The dashboard's pages, one file each, registered by `dashboard/app.py`."""
