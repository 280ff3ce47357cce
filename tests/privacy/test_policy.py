"""Which variables hold personal data (built-in names, declarations a process owner keeps in
Camunda Modeler) and how each kind is masked."""

from __future__ import annotations

from engine.privacy import (
    Masker,
    Viewer,
    mask_address,
    mask_id_number,
    mask_name,
    mask_phone,
    policy_from_bpmn,
)

DIAGRAM = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:process id="visit" isExecutable="true">
    <bpmn:extensionElements><camunda:properties>
      <camunda:property name="pii.phone" value="guardianContact, emergency*" />
      <camunda:property name="pii.name" value="patientName" />
      <camunda:property name="pii.none" value="wardPhone" />
      <camunda:property name="pii.patient" value="visitNo" />
    </camunda:properties></bpmn:extensionElements>
    <bpmn:startEvent id="start"><bpmn:extensionElements><camunda:formData>
      <camunda:formField id="homeLocation" label="住址" type="string">
        <camunda:properties><camunda:property id="pii" value="address" /></camunda:properties>
      </camunda:formField>
      <camunda:formField id="idNumber" label="身份证号" type="string" />
    </camunda:formData></bpmn:extensionElements></bpmn:startEvent>
    <bpmn:userTask id="call" name="电话联系" camunda:candidateGroups="callback_team">
      <bpmn:extensionElements><camunda:properties>
        <camunda:property name="pii.reveal" value="phone" />
      </camunda:properties></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:userTask id="investigate" name="调查" camunda:candidateGroups="finance">
      <bpmn:extensionElements>
        <camunda:properties><camunda:property name="pii.reveal" value="none" /></camunda:properties>
        <camunda:formData><camunda:formField id="guardianContact" label="监护人电话" type="string" /></camunda:formData>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:userTask id="visit" name="上门" camunda:candidateGroups="ward_nurse" />
  </bpmn:process>
</bpmn:definitions>""".encode()

VALUES = {"phone": "13612342222", "guardianContact": "13900001111", "emergencyTel": "13800002222",
          "wardPhone": "6021", "patientName": "张三明", "homeLocation": "北京市海淀区中关村大街1号",
          "idNumber": "110101199001011234", "visitNo": "V-77", "note": "回访"}


def test_masks_by_kind():
    assert mask_phone("13612342222") == "136****2222"
    assert mask_phone("+86 136-1234-2222") == "136****2222"
    assert mask_id_number("110101199001011234") == "1101**********1234"
    assert mask_address("北京市海淀区中关村大街1号") == "北京市海淀区****"
    assert mask_address("浙江省杭州市西湖区文三路90号") == "浙江省杭州市西湖区****"
    assert mask_address("12 Main Street, Springfield") == "Springfield****"
    assert mask_name("张三明") == "张*明" and mask_name("李四") == "李*"


def test_built_in_names_protect_a_diagram_nobody_annotated():
    policy = policy_from_bpmn(DIAGRAM.replace(b'name="pii.', b'name="other.').replace(b'id="pii"', b'id="other"'), "visit")
    assert policy.kind_of("phone") == "phone" and policy.kind_of("complainantPhone") == "phone"
    assert policy.kind_of("idNumber") == "idNumber" and policy.kind_of("homeAddress") == "address"
    assert policy.kind_of("patientName") is None and policy.kind_of("note") is None
    assert policy.kind_of("wardPhone") == "phone"  # until the owner says otherwise


def test_declarations_on_the_process_and_on_form_fields():
    policy = policy_from_bpmn(DIAGRAM, "visit")
    kinds = {name: policy.kind_of(name) for name in VALUES}
    assert kinds == {"phone": "phone", "guardianContact": "phone", "emergencyTel": "phone", "wardPhone": None,
                     "patientName": "name", "homeLocation": "address", "idNumber": "idNumber",
                     "visitNo": None, "note": None}
    assert policy.patient(VALUES) == "V-77"


def test_a_step_shows_in_full_what_it_declares_and_its_own_form_fields():
    policy = policy_from_bpmn(DIAGRAM, "visit")
    caller = Viewer("caller", ("callback_team",))
    call = {"element_id": "call", "status": "open", "assignee": None, "candidate_groups": ["callback_team"]}
    shown = Masker(policy, caller, [call]).values(VALUES)
    assert shown["phone"] == VALUES["phone"] and shown["guardianContact"] == VALUES["guardianContact"]
    assert shown["idNumber"] == "1101**********1234" and shown["patientName"] == "张*明"
    finance = Viewer("finance", ("finance",))
    investigate = {"element_id": "investigate", "status": "open", "candidate_groups": ["finance"]}
    shown = Masker(policy, finance, [investigate]).values(VALUES)
    assert shown["guardianContact"] == VALUES["guardianContact"]  # a field of its own form
    assert shown["phone"] == "136****2222" and shown["homeLocation"] == "北京市海淀区****"
    nurse = Viewer("nurse", ("ward_nurse",))
    visit = {"element_id": "visit", "status": "open", "candidate_groups": ["ward_nurse"]}
    assert Masker(policy, nurse, [visit]).values(VALUES) == VALUES  # no declaration: the whole case
    assert Masker(policy, nurse, [{**visit, "status": "completed"}]).values(VALUES)["phone"] == "136****2222"
    assert Masker(policy, Viewer("his", (), unmasked=True)).values(VALUES) == VALUES


def test_the_hospital_diagrams_declare_what_their_steps_need():
    """The investigating department works on the facts, not the complainant's phone; a ward's desk
    phone is no personal data."""
    from pathlib import Path

    workflows = Path(__file__).resolve().parents[2] / "workflows" / "bpmn"
    complaint = policy_from_bpmn((workflows / "complaint.bpmn").read_bytes(), "complaint")
    assert complaint.kind_of("complainantPhone") == "phone"
    assert not complaint.step_needs("Activity_investigate", "complainantPhone")
    escort = policy_from_bpmn((workflows / "escort_request.bpmn").read_bytes(), "escort_request")
    assert escort.kind_of("wardPhone") is None
