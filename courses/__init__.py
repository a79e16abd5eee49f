"""Courses on the hub's side: publishing a course's next revision (:mod:`courses.git`,
the local mirrors in :mod:`courses.local`, a cluster's git remotes in
:mod:`courses.cluster`), the pull link (:mod:`courses.links`) and who has which revision.
The command line behind `make push-notebooks` and `make course-status` is
``python -m courses``.  What happens in a student's home (the pull, the revision report)
is :mod:`lakehub.courses`; the course's settings are the site file's ``courses:``.

Layer 2: imports the vocabulary, the site model and the session library's file helpers.
"""
