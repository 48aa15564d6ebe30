"""Jobs that outgrow one process: Ray Data embedding for builds, and offline batch selection.

:mod:`kshot.distributed.embed` embeds a corpus on a Ray cluster (``kshot index build --ray``);
:mod:`kshot.distributed.batch` selects for a large query file, resumably, here or on Ray
(``kshot select-batch``). Nothing imports ``ray`` until a Ray job starts; a missing ``ray`` then
raises :class:`~kshot.errors.MissingDependencyError` with the install hint.
"""
