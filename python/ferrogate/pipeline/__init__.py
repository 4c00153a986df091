"""The data-plane request path as explicit phases (see :mod:`.phases`, assembled in :mod:`.chain`)."""
