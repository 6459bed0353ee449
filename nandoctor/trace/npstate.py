"""NumPy's own error-state functions, captured before a traced program's calls are redirected.

While a program is traced, ``np.errstate``/``np.seterr``/... answer the program (see
:class:`~nandoctor.trace.events.UserErrorState`); nandoctor's own code uses these originals.
"""

import numpy as np

errstate = np.errstate
seterr = np.seterr
geterr = np.geterr
seterrcall = np.seterrcall
geterrcall = np.geterrcall
