"""VTK behind pyvista/pyvistaqt: the OpenGL render window, the X interactor, interactor styles,
fonts and annotation actors are registered through VTK's object factories when their module is
imported, which PyInstaller's import analysis cannot see. Each ``vtkmodules.*`` module named here
brings its own dependencies through hooks-contrib's per-module VTK hooks."""
from PyInstaller.utils.hooks import copy_metadata

hiddenimports = [
    "vtkmodules.vtkCommonPython",
    "vtkmodules.vtkRenderingOpenGL2",
    "vtkmodules.vtkRenderingUI",
    "vtkmodules.vtkInteractionStyle",
    "vtkmodules.vtkInteractionWidgets",
    "vtkmodules.vtkRenderingFreeType",
    "vtkmodules.vtkRenderingAnnotation",
    "vtkmodules.vtkRenderingLabel",
    "vtkmodules.vtkRenderingContextOpenGL2",
    "vtkmodules.vtkRenderingVolumeOpenGL2",
    "vtkmodules.vtkRenderingGL2PSOpenGL2",
    "vtkmodules.vtkFiltersCore",
    "vtkmodules.vtkFiltersGeneral",
    "vtkmodules.vtkFiltersSources",
    "vtkmodules.vtkIOGeometry",
    "vtkmodules.vtkIOPLY",
    "vtkmodules.vtkIOLegacy",
    "vtkmodules.vtkIOXML",
    "vtkmodules.qt",
    "vtkmodules.qt.QVTKRenderWindowInteractor",
    "vtkmodules.util.numpy_support",
    "vtkmodules.numpy_interface.dataset_adapter",
]
datas = copy_metadata("pyvistaqt") + copy_metadata("pyvista") + copy_metadata("vtk")
