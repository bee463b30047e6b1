"""``python -m devstack`` (what ``make run`` runs): the whole system on embedded defaults.

PostgreSQL and S3 come from ``DATABASE_URL`` / ``S3_ENDPOINT`` when set, else from
local ones (see ``infra.py``); every ``services/*_svc`` package then runs as a child
process (``processes.py``); a development project and API key end in ``.run/mtw.env``
(``devkey.py``). ``MTW_RUN_DIR`` moves ``.run``; ``S3_PORT`` and ``<PACKAGE>_PORT``
(e.g. ``DATASET_SVC_PORT``) pin ports, which are otherwise the well-known ones when free.
New parts (a Ray head…) are :class:`devstack.components.Component`s
added to the list in ``__main__.py``.
"""
