//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), on the same port
//! as `pianoroll.v1.Composer`: a translation of its messages onto [`super::V2`]. Tensors may
//! come in `raw_input_contents` or in typed `contents`; outputs are sent raw, as Triton sends
//! them.

use std::collections::HashMap;

use proto::inference::grpc_inference_service_server::GrpcInferenceService;
use proto::inference::model_infer_response::InferOutputTensor;
use proto::inference::{
    ModelConfigRequest, ModelConfigResponse, ModelInferRequest, ModelInferResponse,
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse,
    ModelStatisticsRequest, ModelStatisticsResponse, RepositoryIndexRequest,
    RepositoryIndexResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest,
    ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use tonic::{Request, Response, Status};

use super::{InferRequest, InputTensor, TensorData, V2};

/// The fully qualified name of the service.
pub const SERVICE_NAME: &str = "inference.GRPCInferenceService";

#[derive(Clone)]
pub struct InferenceService {
    v2: V2,
}

impl InferenceService {
    pub fn new(v2: V2) -> InferenceService {
        InferenceService { v2 }
    }
}

/// The protocol's request from the gRPC message: each input with its raw bytes when the
/// request carries them (one entry per input, or none), else its typed contents.
fn infer_request(request: ModelInferRequest) -> Result<InferRequest, Status> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents: {} entries for {} inputs (one each, or none)",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let inputs = request
        .inputs
        .into_iter()
        .map(|tensor| InputTensor {
            name: tensor.name,
            datatype: tensor.datatype,
            shape: tensor.shape,
            data: match raw.next() {
                Some(bytes) => TensorData::Raw(bytes),
                None => TensorData::Typed(tensor.contents.unwrap_or_default()),
            },
        })
        .collect();
    Ok(InferRequest {
        model_name: request.model_name,
        model_version: request.model_version,
        id: request.id,
        inputs,
        outputs: request.outputs.into_iter().map(|o| o.name).collect(),
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        // A server answers only once its models are loaded.
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self.v2.model(&request.name, &request.version).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(self.v2.server_metadata()))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        self.v2
            .metadata(&request.name, &request.version)
            .map(Response::new)
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        let model = request.model_name.clone();
        let request = infer_request(request).map_err(|status| self.v2.refused(&model, status))?;
        let response = self.v2.infer(request).await?;
        let (outputs, raw) = response
            .outputs
            .into_iter()
            .map(|output| {
                let tensor = InferOutputTensor {
                    name: output.name.to_owned(),
                    datatype: output.datatype.name().to_owned(),
                    shape: output.shape,
                    parameters: HashMap::new(),
                    contents: None,
                };
                (tensor, output.raw)
            })
            .unzip();
        Ok(Response::new(ModelInferResponse {
            model_name: response.model_name,
            model_version: response.model_version,
            id: response.id,
            parameters: HashMap::new(),
            outputs,
            raw_output_contents: raw,
        }))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let config = self.v2.config(&request.name, &request.version)?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(config),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let request = request.into_inner();
        let model_stats = self.v2.statistics(&request.name, &request.version)?;
        Ok(Response::new(ModelStatisticsResponse { model_stats }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let request = request.into_inner();
        if !request.repository_name.is_empty() {
            return Err(Status::not_found(format!(
                "repository_name: this server has one repository, unnamed, not {:?}",
                request.repository_name
            )));
        }
        Ok(Response::new(RepositoryIndexResponse {
            models: self.v2.repository_index(request.ready),
        }))
    }
}
