"""De-identification of what an import keeps: DICOM patient, study and device identifiers.

By default a sample's metadata keeps only what describes the image (modality, spacing,
manufacturer, sizes, windowing); ``latentmap import --keep-identifiers`` keeps the rest too.
Names follow the DICOM keywords; the list covers the PS3.15 basic-profile attributes that a
reader here can return. Series UIDs never appear in sample ids (``uid_token``).
"""
from __future__ import annotations

import hashlib

# Tags that identify a patient, a visit, a device or a place, or that are free text which may.
IDENTIFYING_TAGS = frozenset({
    "PatientID", "PatientName", "PatientSex", "PatientAge", "PatientBirthDate", "PatientBirthTime",
    "PatientWeight", "PatientSize", "PatientAddress", "PatientComments", "OtherPatientIDs",
    "OtherPatientNames", "EthnicGroup", "MedicalRecordLocator",
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime", "AcquisitionDateTime",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "AccessionNumber", "StudyID", "StudyDescription", "SeriesDescription", "ImageComments",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "RequestingPhysician", "PhysiciansOfRecord",
})


def deidentify(metadata: dict) -> dict:
    """``metadata`` without the identifying tags."""
    return {k: v for k, v in metadata.items() if k not in IDENTIFYING_TAGS}


def uid_token(uid: str) -> str:
    """A short stable token for a DICOM UID: the same series gets the same sample id, and the
    UID itself (which links back to the patient's record) stays out of ids and exports."""
    return "s" + hashlib.sha1(str(uid).encode()).hexdigest()[:12]
