"""The operator interface: a REST API (``/api/v1/``) and a live web view (``/``).

- :mod:`~controller.api.snapshot`: the controller's live state, copied on the app thread;
- :mod:`~controller.api.bridge`: snapshots and config pushes through the app thread;
- :mod:`~controller.api.live`: trace and plan on that live state;
- :mod:`~controller.api.views`: the JSON documents;
- :mod:`~controller.api.ofctl`: flows in ``ovs-ofctl`` syntax (shared with ``vmn flows`` and ``vmn plan``);
- :mod:`~controller.api.auth`: the bearer token of mutating calls;
- :mod:`~controller.api.routes`: the FastAPI application; :mod:`~controller.api.server` runs it;
- :mod:`~controller.api.client`: what ``vmn plan`` sends.
"""
