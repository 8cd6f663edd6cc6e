"""VTK behind pyvista/pyvistaqt: the OpenGL render window, the X interactor, interactor styles,
fonts and annotation actors are registered through VTK's object factories when their module is
imported, which PyInstaller's import analysis cannot see. Each ``vtkmodules.*`` module named here
brings its own dependencies through hooks-contrib's per-module VTK hooks.

The spec excludes ``vtk`` / ``vtkmodules.all`` (pyvista's ``_vtk.py`` names ``from vtk import *``
under ``TYPE_CHECKING``, which the analysis follows into all 151 VTK modules, 355 MB): pyvista
imports VTK modules lazily by name, so the list below is every module the app and the engine load
(recorded from ``sys.modules`` after the sample project's main window, the mesh view tests and
the mask -> mesh and mesh reader tests), plus the readers ``pv.read`` picks by suffix (legacy
``.vtk``, XML ``.vtp``/``.vtu``, STL/OBJ, PLY) and ``extract_surface``'s geometry filter."""
from PyInstaller.utils.hooks import copy_metadata

hiddenimports = [
    "vtkmodules.vtkChartsCore",
    "vtkmodules.vtkCommonColor",
    "vtkmodules.vtkCommonComputationalGeometry",
    "vtkmodules.vtkCommonCore",
    "vtkmodules.vtkCommonDataModel",
    "vtkmodules.vtkCommonExecutionModel",
    "vtkmodules.vtkCommonMath",
    "vtkmodules.vtkCommonMisc",
    "vtkmodules.vtkCommonPython",
    "vtkmodules.vtkCommonSystem",
    "vtkmodules.vtkCommonTransforms",
    "vtkmodules.vtkFiltersCellGrid",
    "vtkmodules.vtkFiltersCore",
    "vtkmodules.vtkFiltersExtraction",
    "vtkmodules.vtkFiltersGeneral",
    "vtkmodules.vtkFiltersGeometry",
    "vtkmodules.vtkFiltersModeling",
    "vtkmodules.vtkFiltersPython",
    "vtkmodules.vtkFiltersSources",
    "vtkmodules.vtkIOCellGrid",
    "vtkmodules.vtkIOCore",
    "vtkmodules.vtkIOGeometry",
    "vtkmodules.vtkIOImage",
    "vtkmodules.vtkIOLegacy",
    "vtkmodules.vtkIOPLY",
    "vtkmodules.vtkIOXML",
    "vtkmodules.vtkIOXMLParser",
    "vtkmodules.vtkImagingCore",
    "vtkmodules.vtkImagingMath",
    "vtkmodules.vtkImagingSources",
    "vtkmodules.vtkInteractionStyle",
    "vtkmodules.vtkInteractionWidgets",
    "vtkmodules.vtkParallelCore",
    "vtkmodules.vtkPythonContext2D",
    "vtkmodules.vtkRenderingAnnotation",
    "vtkmodules.vtkRenderingContext2D",
    "vtkmodules.vtkRenderingContextOpenGL2",
    "vtkmodules.vtkRenderingCore",
    "vtkmodules.vtkRenderingFreeType",
    "vtkmodules.vtkRenderingGL2PSOpenGL2",
    "vtkmodules.vtkRenderingHyperTreeGrid",
    "vtkmodules.vtkRenderingLabel",
    "vtkmodules.vtkRenderingMatplotlib",
    "vtkmodules.vtkRenderingOpenGL2",
    "vtkmodules.vtkRenderingUI",
    "vtkmodules.vtkRenderingVolume",
    "vtkmodules.vtkRenderingVolumeOpenGL2",
    "vtkmodules.vtkViewsContext2D",
    "vtkmodules.vtkViewsCore",
    "vtkmodules.qt",
    "vtkmodules.qt.QVTKRenderWindowInteractor",
    "vtkmodules.util.numpy_support",
    "vtkmodules.numpy_interface.dataset_adapter",
]
datas = copy_metadata("pyvistaqt") + copy_metadata("pyvista") + copy_metadata("vtk")
